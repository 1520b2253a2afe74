"""Analysis of finished artifacts: comparison tables, figures and the paper's §2 findings (no torch)."""
