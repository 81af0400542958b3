"""The demo workload (`meshpilot demo-app`): a tiny HTTP server that says which version answered."""
