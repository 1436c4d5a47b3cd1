# The troubleshooting steps, with the service's own settings (run it with the service's environment)
python -m service doctor
echo "exit status: $?"
