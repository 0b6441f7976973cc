"""The browser chat: replies written by tasks of their own, delivered live to every open tab."""
