"""Model-card data and its Jinja template (issue: cards and publishing). Not built yet."""
