"""cumulo.model — see ../../../docs/architecture.md and DESIGN.md."""
