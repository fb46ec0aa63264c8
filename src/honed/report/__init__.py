"""Reports: artifacts, eval summaries and bench results side by side (Markdown and HTML)."""
