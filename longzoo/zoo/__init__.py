"""Registry of ready conversion recipes and loaders (issue: the zoo). Nothing registered yet."""
