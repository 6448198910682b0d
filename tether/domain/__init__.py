"""Pure types and rules: the Response aggregate, events, the fold, ids. Imports nothing of ours."""
