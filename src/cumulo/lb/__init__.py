"""cumulo.lb — see ../../../docs/architecture.md and DESIGN.md."""
