"""Transfer methods: the backbone, the shared head, and one file per method in ``methods/tuners/``,
registered in :data:`methods.registry.REGISTRY`."""
