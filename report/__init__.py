"""The 6D framework report: tables, workbook, charts and HTML for a tagged corpus."""
