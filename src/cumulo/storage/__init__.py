"""cumulo.storage — see ../../../docs/architecture.md and DESIGN.md."""
