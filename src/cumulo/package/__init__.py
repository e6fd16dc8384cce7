"""cumulo.package — see ../../../docs/architecture.md and DESIGN.md."""
