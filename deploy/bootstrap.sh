#!/bin/sh
# The compose service `init`, run before the API and the workers: the console's first admin
# (password from OPCON_ADMIN_PASSWORD), the DVC project in its volume, the raw data (pulled from
# the DVC remote, or generated), and a first champion in the MLflow server. Idempotent: on later starts it finds everything in place and exits in seconds.
set -eu
python -m control_api.identity.bootstrap
if [ ! -f "$OPCON_PROJECT_DIR/dvc.yaml" ]; then
    python -m ml.workspace "$OPCON_PROJECT_DIR"
fi
exec python -m ml.bootstrap --train
