"""porter: move container images between registries, raw registry storage and docker-loadable archives."""

__version__ = "0.1.0"
