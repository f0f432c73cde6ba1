"""The dashboard pages, one file per step of the loop (run by st.navigation in app.py).

Not named pages/: Streamlit treats a pages/ folder next to the main script as the older
multipage mode, which runs a page without app.py on a fresh server."""
