"""cumulo.dashboard — see ../../../docs/architecture.md and DESIGN.md."""
