-- Run once by the postgres image when its volume is empty: MLflow's tracking and registry store lives
-- next to the console's own database (POSTGRES_DB: job records, data versions, feedback).
CREATE DATABASE mlflow;
