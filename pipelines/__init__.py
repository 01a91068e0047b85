"""ZenML pipelines and the local stack they run on."""
