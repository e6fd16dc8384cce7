"""cumulo.state — see ../../../docs/architecture.md and DESIGN.md."""
