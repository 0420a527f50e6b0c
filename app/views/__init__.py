"""Page scripts of the app (run by ``st.navigation`` from ``app/main.py``, not imported)."""
