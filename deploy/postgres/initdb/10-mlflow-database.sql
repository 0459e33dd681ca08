-- Run once by the postgres image when its volume is empty: MLflow's tracking and registry store lives
-- next to the console's own database (POSTGRES_DB: job records, data versions, feedback), and the
-- users of the MLflow server's login in their own (deploy/mlflow.sh also creates it when missing).
CREATE DATABASE mlflow;
CREATE DATABASE mlflow_auth;
