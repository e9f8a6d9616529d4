"""azurestack-exporter: Azure Stack Hub servicing-policy compliance for Prometheus."""

__version__ = "0.1.0"
