ln -s /nonexistent/target ldangling
