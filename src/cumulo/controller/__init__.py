"""cumulo.controller — see ../../../docs/architecture.md and DESIGN.md."""
