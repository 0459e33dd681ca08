"""What the signed-in user may open and press: the permissions GET /me lists, nothing else.

Every screen is registered with st.navigation whatever the role, so a page opened by its URL is found;
the ones the role may not use are hidden from the menu, and the frame shows why instead of running them.
The API checks every request again: hiding is for clarity, not for safety.
"""

from __future__ import annotations

import dataclasses

import streamlit as st

from ui.components import session


@dataclasses.dataclass(frozen=True)
class Screen:
    path: str  # relative to ui/
    title: str
    icon: str
    permission: str  # what GET /me must list for the page to be usable
    section: str


SCREENS = (
    Screen("app_pages/predict.py", "Predict", ":material/online_prediction:", "predict", "Operate"),
    Screen("app_pages/batch.py", "Batch", ":material/table_view:", "predict", "Operate"),
    Screen("app_pages/retrain.py", "Retrain", ":material/model_training:", "jobs:start", "Operate"),
    Screen("app_pages/models.py", "Models", ":material/inventory_2:", "read", "Operate"),
    Screen("app_pages/data.py", "Data", ":material/database:", "read", "Operate"),
    Screen("app_pages/drift.py", "Drift", ":material/query_stats:", "read", "Monitor"),
    Screen("app_pages/quality.py", "Quality", ":material/insights:", "read", "Monitor"),
    Screen("app_pages/compare.py", "Compare", ":material/compare_arrows:", "read", "Monitor"),
    Screen("app_pages/emissions.py", "Emissions", ":material/co2:", "read", "Monitor"),
    Screen("app_pages/service.py", "Service", ":material/monitor_heart:", "read", "Monitor"),
    Screen("app_pages/jobs.py", "Jobs", ":material/work_history:", "read", "Monitor"),
    Screen("app_pages/users.py", "Users", ":material/group:", "users:manage", "Admin"),
    Screen("app_pages/tokens.py", "Tokens", ":material/key:", "tokens:manage", "Admin"),
    Screen("app_pages/audit.py", "Audit", ":material/policy:", "audit:read", "Admin"),
)


def can(permission: str, user: dict | None = None) -> bool:
    """Whether the signed-in user's role grants `permission` (False when nobody is signed in)."""
    user = user if user is not None else session.signed_in_user()
    return bool(user) and permission in user.get("permissions", ())


def usable(user: dict | None) -> list[Screen]:
    return [screen for screen in SCREENS if can(screen.permission, user)]


def home(user: dict | None) -> Screen:
    """The page "/" opens: the first one the role may use (Predict for operators and up)."""
    return next(iter(usable(user)), SCREENS[0])


def pages(user: dict | None) -> dict[Screen, st.Page]:
    """One st.Page per screen: in the menu when the role may use it, hidden (reachable by URL) if not."""
    default = home(user)
    return {screen: st.Page(screen.path, title=screen.title, icon=screen.icon, default=screen == default,
                            visibility="visible" if can(screen.permission, user) else "hidden")
            for screen in SCREENS}


def menu(built: dict[Screen, st.Page]) -> dict[str, list[st.Page]]:
    """The pages by section; a section whose pages are all hidden goes last, so no empty header shows
    between visible ones."""
    sections: dict[str, list[st.Page]] = {}
    for screen, page in built.items():
        sections.setdefault(screen.section, []).append(page)
    hidden = {name: items for name, items in sections.items()
              if all(p.visibility == "hidden" for p in items)}
    shown = {name: items for name, items in sections.items() if name not in hidden}
    return {**shown, "": [p for items in hidden.values() for p in items]} if hidden else shown


def screen_of(built: dict[Screen, st.Page], page: st.Page) -> Screen:
    return next(screen for screen, candidate in built.items() if candidate is page)


def refusal(screen: Screen, user: dict) -> None:
    """What a page the role may not use shows instead of itself (opened by its URL, or a link)."""
    st.title(screen.title)
    st.error(f"Your role ({user['role']}) may not use {screen.title}: it needs {screen.permission}.",
             icon=":material/block:")
    st.caption("An administrator can give your account another role on the Users page.")
    st.page_link(home(user).path, label=f"Go to {home(user).title}", icon=home(user).icon)
