"""The KPI engine's steps, one module per family of KPIs, each a `kpi.tick.Step`."""
