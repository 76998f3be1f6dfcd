"""The student activation: the engine (`engine.py`), the flow's ordered steps
(`activation.py`), one module per step (`steps/`), and the routes (`views.py`)."""
