"""Code that runs outside Kedro, in the launched training process (and helpers it shares with the nodes)."""
