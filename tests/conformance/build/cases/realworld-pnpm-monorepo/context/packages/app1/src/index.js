import express from "express"; import { hello } from "@acme/shared"; express().get("/", (_, r) => r.send(hello())).listen(8000);
