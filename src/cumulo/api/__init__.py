"""cumulo.api — see ../../../docs/architecture.md and DESIGN.md."""
