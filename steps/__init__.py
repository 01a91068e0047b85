"""ZenML steps: thin wrappers that wire ``graft`` functions to artifacts, settings and MLflow."""
