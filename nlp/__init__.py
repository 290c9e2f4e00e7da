"""Reading policy documents and cutting them into paragraphs."""
