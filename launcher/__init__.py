"""The launchers' shared logic (launch_helper.py), runnable without any installed package."""
