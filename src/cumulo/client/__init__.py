"""cumulo.client — see ../../../docs/architecture.md and DESIGN.md."""
