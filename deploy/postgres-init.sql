-- MLflow's tracking and registry get a database of their own beside mlsvc's metadata store.
CREATE DATABASE mlflow OWNER mlsvc;
