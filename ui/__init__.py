"""The operator console: a Streamlit front end that reaches the control API over HTTP only."""
