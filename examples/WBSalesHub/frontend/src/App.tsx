import { useEffect, useState } from 'react'
import { Link, Route, Routes } from 'react-router'

type Health = { status: string; hub: string; version: string }
type Lead = { id: string; company: string; contact: string; value: number }

function Status() {
  const [health, setHealth] = useState<Health | null>(null)
  useEffect(() => {
    fetch('/health')
      .then((r) => r.json() as Promise<Health>)
      .then(setHealth)
      .catch(() => setHealth(null))
  }, [])
  return <p className="status">{health ? `${health.hub} ${health.version}: ${health.status}` : 'checking...'}</p>
}

function Leads() {
  const [leads, setLeads] = useState<Lead[]>([])
  useEffect(() => {
    fetch('/api/leads')
      .then((r) => r.json() as Promise<{ leads: Lead[] }>)
      .then((d) => setLeads(d.leads))
      .catch(() => setLeads([]))
  }, [])
  if (leads.length === 0) return <p>No leads yet.</p>
  return (
    <table>
      <tbody>
        {leads.map((l) => (
          <tr key={l.id}>
            <td>{l.company}</td>
            <td>{l.contact}</td>
            <td>{l.value}</td>
          </tr>
        ))}
      </tbody>
    </table>
  )
}

export default function App() {
  return (
    <main>
      <h1>WBSalesHub</h1>
      <Status />
      <nav>
        <Link to="/">Home</Link> | <Link to="/leads">Leads</Link>
      </nav>
      <Routes>
        <Route path="/" element={<p>Sales pipeline at a glance.</p>} />
        <Route path="/leads" element={<Leads />} />
      </Routes>
    </main>
  )
}
