"""The web demo (installed as ``streamrestore.demo``): ``logic`` holds what the page does, ``app`` the Gradio page."""
