"""What limits attempts and sends, shared by the flows, the help desk and purge: identify
lockouts, the proof-of-work challenge, one-time contact codes and their send budget."""
