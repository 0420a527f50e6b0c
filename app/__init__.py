"""entropy_watch.app: the Streamlit app (``streamlit run app/main.py``). Needs the ``app`` extra."""
