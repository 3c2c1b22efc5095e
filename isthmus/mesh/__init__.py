"""The distributed deployment: bundles out to gateways, status, audit and telemetry back."""
