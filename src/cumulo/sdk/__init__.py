"""cumulo.sdk — see ../../../docs/architecture.md and DESIGN.md."""
