"""What every stage shares: config schema and loader, records, content addressing, the stage decorator,
registries and errors. Light: importing it loads none of torch, vllm, prefect or mlflow."""
