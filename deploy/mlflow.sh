#!/bin/sh
# Entry point of the compose service `mlflow`: the server's login first (its config and Flask key in
# $OPCON_MLFLOW_AUTH_DIR, the users admin, viewer and opcon with their passwords from .env in the
# database `mlflow_auth`), then the command, `mlflow --env-file ... server --app-name basic-auth ...`.
set -eu
python -m ml.mlflow_auth
exec "$@"
