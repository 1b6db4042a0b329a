-- Runs once, when the PostgreSQL volume is created: MLflow gets its own database next to
-- Optuna's (both keep an alembic_version table, so they cannot share one).
CREATE DATABASE mlflow;
