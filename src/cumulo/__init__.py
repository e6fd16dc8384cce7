"""cumulo: a self-hosted platform that runs Azure Cloud Services (.csdef/.cscfg) applications."""

__version__ = "0.1.0"
