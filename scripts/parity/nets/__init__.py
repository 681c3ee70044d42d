"""One module per network: the release's side (``Release``), the state-dict name map release -> reid
(``map_name``), reid's config (``CONFIG``), the default input size and step epochs."""
