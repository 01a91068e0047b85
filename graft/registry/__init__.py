"""MLflow: tracking set-up, logging candidate models, the registry and its aliases."""
