console.log("phoenix");
