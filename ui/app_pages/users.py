"""Users: every account with its role and state; add one; change a role, disable or enable an account,
set a new password."""

from __future__ import annotations

import streamlit as st

from ui.api_client import ApiRejectedError
from ui.components import fresh_fields, notices
from ui.components.admin_tables import ROLES, user_label, users_frame
from ui.components.errors import sentence
from ui.components.session import api, signed_in_user

NOTICE = "users_notice"
NEW_USER = "new_user"  # the form's fields: new, empty ones once a user is added
NEW_PASSWORD = "new_user_password"
RESET_PASSWORD = "reset_password"


def refused(error: ApiRejectedError) -> str:
    details = "; ".join(f"{d.field}: {d.problem}" for d in error.details)
    return sentence(error.message) + (f" ({details})." if details else ".")


def carry_out(call, success: str, secrets: tuple[str, ...] = (), done: tuple[str, ...] = ()) -> None:
    """One change through the API, its outcome said after the rerun. Passwords typed for it (`secrets`)
    are dropped either way, the fields in `done` only when it worked."""
    try:
        call()
        notices.later(NOTICE, "success", success)
        secrets = (*secrets, *done)
    except ApiRejectedError as error:
        notices.later(NOTICE, "error", refused(error))
    for name in secrets:
        fresh_fields.retire(name)
    st.rerun()


def add_user() -> None:
    kind = st.segmented_control("Kind", ["person", "service"], default="person", key="new_user_kind",
                                help="people sign in with a password; service accounts only hold API tokens")
    form = fresh_fields.key(NEW_USER)
    with st.form("add_user", border=True):
        username = st.text_input("Username", key=f"{form}_name", placeholder="e.g. j.doe",
                                 help="lower case letters, digits and . _ -")
        display_name = st.text_input("Display name", key=f"{form}_display_name", placeholder="e.g. Jane Doe")
        role = st.selectbox("Role", ROLES, index=1, key=f"{form}_role",
                            help="viewer < operator < engineer < admin: each can do what the one before can")
        password = None
        if kind != "service":
            password = st.text_input("Password", type="password", key=fresh_fields.key(NEW_PASSWORD),
                                     autocomplete="new-password", help="at least 12 characters")
        if st.form_submit_button("Add user", type="primary", icon=":material/person_add:"):
            name = username.strip()
            carry_out(lambda: api().create_user(name, role, display_name.strip() or None, password or None,
                                                kind or "person"),
                      f"Added {kind or 'person'} `{name}` with role {role}.", (NEW_PASSWORD,), (NEW_USER,))


def change_user(users: list[dict]) -> None:
    me = (signed_in_user() or {}).get("username")
    by_label = {user_label(u): u for u in users}
    user = by_label[st.selectbox("User", list(by_label), key="user_to_change")]
    name = user["username"]
    role_column, button_column = st.columns([3, 2], vertical_alignment="bottom")
    role = role_column.selectbox("Role", ROLES, index=ROLES.index(user["role"]), key=f"role_of_{name}")
    if button_column.button("Change role", key="change_role", width="stretch", disabled=role == user["role"]):
        carry_out(lambda: api().change_user(name, role=role),
                  f"`{name}` now has role {role}; their sessions were ended.")
    if user["disabled"]:
        if st.button(f"Enable {name}", icon=":material/person_check:", key="enable_user"):
            carry_out(lambda: api().change_user(name, disabled=False), f"`{name}` can sign in again.")
    elif st.button(f"Disable {name}", icon=":material/person_off:", key="disable_user", disabled=name == me,
                   help="you cannot disable yourself" if name == me else "ends their sessions at once"):
        carry_out(lambda: api().change_user(name, disabled=True),
                  f"`{name}` is disabled: their sessions were ended and they cannot sign in.")
    if user["kind"] == "person":
        password_column, reset_column = st.columns([3, 2], vertical_alignment="bottom")
        password = password_column.text_input("New password", type="password", autocomplete="new-password",
                                              key=fresh_fields.key(RESET_PASSWORD),
                                              help="at least 12 characters; ends their sessions")
        if reset_column.button("Set new password", key="reset_password_button", width="stretch"):
            carry_out(lambda: api().change_user(name, password=password),
                      f"New password set for `{name}`; their sessions were ended.", (RESET_PASSWORD,))


st.title("Users")
st.caption("Who may use the console and the API, with which role. A role change, disabling an account or a "
           "new password ends that user's sessions at once.")
notices.show(NOTICE)
users = api().users()
st.dataframe(users_frame(users), hide_index=True, width="stretch", column_config={
    "created": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm", timezone="UTC"),
    "last sign-in": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm", timezone="UTC")})
add_column, change_column = st.columns(2, gap="large")
with add_column:
    st.subheader("Add a user")
    add_user()
with change_column:
    st.subheader("Change a user")
    if users:
        change_user(users)
