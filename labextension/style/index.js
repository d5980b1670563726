import './base.css';
import './dashboard.css';
import './endpoints.css';
