// Bootstrap the application.
import './bootstrap';
console.log('app');
