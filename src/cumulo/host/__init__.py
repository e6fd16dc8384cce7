"""cumulo.host — see ../../../docs/architecture.md and DESIGN.md."""
