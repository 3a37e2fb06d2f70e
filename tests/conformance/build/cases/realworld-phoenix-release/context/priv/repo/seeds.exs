# Script for populating the database.
