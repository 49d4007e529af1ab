"""The sockets: a conversation's page (`room`) and the directory (`directory`), on what they share (`base`)."""
